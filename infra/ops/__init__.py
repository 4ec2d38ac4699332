"""Operator commands run by hand against a deployment, outside any Lambda: replaying exhausted stream
batches (``python -m infra.ops.replay``) and rebuilding Redis from MongoDB (``python -m infra.ops.rebuild``).

They reuse the ingest service from the ``movierec`` layer but are not part of it: no function imports
them, and the Kafka client they need (the ``ops`` extra) stays out of the Lambda package.
"""
