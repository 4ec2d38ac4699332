"""Infrastructure: the local cloud and the docker-free Lambda runner (``python -m infra.local``)."""
