"""The web terminal app (``ttyd``): a shell in the session, in a browser tab."""
