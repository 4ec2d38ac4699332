"""``template.yaml`` read the way the local runner needs it: functions, routes, stream sources, names.

- ``loader``: YAML with CloudFormation short tags (``!Ref``, ``!Sub`` ...) as their long forms;
- ``intrinsics``: parameters, conditions and intrinsic functions for a local stack (default
  ``movierec-local`` in us-east-1, account 123456789012; ``names`` holds these);
- ``stack``: what the runner reads from the resolved template (``specs`` are its answers);
- ``environment``: a function's or the training task's variables, pointed at the local cloud.

The names below are the package's interface; import them from here.
"""

from infra.local.template.environment import (
    LOCAL_DEFAULTS,
    LocalCloud,
    local_environment,
    read_env_vars_file,
    state_dir_for,
    training_environment,
)
from infra.local.template.intrinsics import UnresolvedError
from infra.local.template.loader import load_template
from infra.local.template.names import (
    ACCOUNT_ID,
    DEFAULT_TEMPLATE,
    LOCAL_API_ID,
    LOCAL_USER_POOL_CLIENT_ID,
    LOCAL_USER_POOL_ID,
    MONGODB_SECRET_ID,
    REDIS_AUTH_SECRET_ID,
    REGION,
    REPO_ROOT,
    STACK_NAME,
    TRAINING_CONTAINER,
)
from infra.local.template.specs import FunctionSpec, KinesisSource, LocalResources, Route, StateMachineSpec
from infra.local.template.stack import Stack

__all__ = [
    "ACCOUNT_ID",
    "DEFAULT_TEMPLATE",
    "LOCAL_API_ID",
    "LOCAL_DEFAULTS",
    "LOCAL_USER_POOL_CLIENT_ID",
    "LOCAL_USER_POOL_ID",
    "MONGODB_SECRET_ID",
    "REDIS_AUTH_SECRET_ID",
    "REGION",
    "REPO_ROOT",
    "STACK_NAME",
    "TRAINING_CONTAINER",
    "FunctionSpec",
    "KinesisSource",
    "LocalCloud",
    "LocalResources",
    "Route",
    "Stack",
    "StateMachineSpec",
    "UnresolvedError",
    "load_template",
    "local_environment",
    "read_env_vars_file",
    "state_dir_for",
    "training_environment",
]
