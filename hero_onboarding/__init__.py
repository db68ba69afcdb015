"""hero-onboarding: prove a Mycelium address, buy credits through Stripe, see the balance."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hero-onboarding")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

SERVICE_NAME = "hero_onboarding"
