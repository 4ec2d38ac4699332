"""The training job's adapters (the only training modules that touch pymongo, redis or boto3 besides
the layer's): the MongoDB export (``training_source``), the publication writer (``publication``) and the
Kinesis producer the publisher uses (``stream``)."""
