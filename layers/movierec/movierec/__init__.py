"""movierec: the shared domain package, shipped to both Lambda functions as a layer.

Only :mod:`movierec.stores` talks to boto3, redis or pymongo; everything else receives a store.
"""

__version__ = "0.1.0"
