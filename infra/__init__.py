"""Launchers for the services the pipeline needs: the embedded broker, the local stack."""
