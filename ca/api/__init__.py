"""The HTTP adapter over ``ca.service``: routes, the calling officer, problem details."""
