"""Networks in the original (ldm) key layout, built from shapes read off the state dict."""
