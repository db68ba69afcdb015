"""A local Stripe-compatible Checkout sandbox: API, hosted payment page and signed webhooks.

Stripe cannot be reached from our machines and no emulator covers Checkout with webhooks, so
this one speaks Stripe's wire format for everything hero-onboarding uses. The official SDK,
a browser and our webhook endpoint all talk to it exactly as they would to Stripe's test mode.
"""
