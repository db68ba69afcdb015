"""`python -m hero_onboarding` is the same as the `hero-onboarding` console script."""

from .control.cli import main

main()
