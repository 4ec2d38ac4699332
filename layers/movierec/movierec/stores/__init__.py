"""Adapters: the only modules that import boto3, redis or pymongo.

Each adapter is a small class over one client. Clients are built once per container by the
``connect_*`` factories and reused across invocations.
"""
