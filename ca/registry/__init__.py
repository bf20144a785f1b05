"""The registry: provinces and prefecture-level cities (GB/T 2260) and issuer ids."""
