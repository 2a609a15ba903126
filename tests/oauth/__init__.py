"""Sign-in through Amazon Cognito, end to end (a package, so its test module names stay apart
from tests/iac's)."""
