"""A team's own policy, for `python -m brace explain tests.cli_team_policy:payments`."""

import brace

payments = brace.http(deadline=10).replace(attempts=3, breaker="payments")
not_a_policy = 42
