"""Group buy (拼团): shoppers open groups, others join them, members pay; some never pay, so
with the run's short group window some groups fail (and are refunded or re-priced).

    GROUPBUY_ADMIN_TOKEN=TOKEN locust -f loadtests/group_buy.py --host http://127.0.0.1:PORT

Runs `scenarios/group_buy_two_tier.toml` (or `--scenario`) with a group-heavy journey mix.
"""

from typing import ClassVar

from loadtests.openload import OpenWorkloadShape, OpenWorkloadUser


class GroupBuyShopper(OpenWorkloadUser):
    default_scenario = "scenarios/group_buy_two_tier.toml"
    mix: ClassVar[dict[str, float] | None] = {
        "group": 0.8, "buy": 0.05, "browse": 0.1, "abandon": 0.05}


class GroupBuyArrivals(OpenWorkloadShape):
    pass
