"""The local cloud (moto, Redis, MongoDB) and a docker-free stand-in for ``sam local``."""
