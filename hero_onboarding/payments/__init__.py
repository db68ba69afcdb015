"""Payment providers behind one Protocol (payments.base), and their webhook parsing."""
