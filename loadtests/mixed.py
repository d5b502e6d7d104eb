"""Mixed traffic: browse, reserve, pay, cancel, abandon, retry with the same idempotency key,
client timeouts (unknown outcomes), groups and coupons, all at once.

    GROUPBUY_ADMIN_TOKEN=TOKEN locust -f loadtests/mixed.py --host http://127.0.0.1:PORT

Runs `scenarios/default.toml` (or `--scenario`) with every journey in the mix.
"""

from typing import ClassVar

from loadtests.openload import OpenWorkloadShape, OpenWorkloadUser


class MixedShopper(OpenWorkloadUser):
    default_scenario = "scenarios/default.toml"
    mix: ClassVar[dict[str, float] | None] = {
        "browse": 0.15, "buy": 0.3, "abandon": 0.1, "cancel": 0.1, "group": 0.1,
        "coupon": 0.1, "retry": 0.1, "timeout": 0.05}


class MixedArrivals(OpenWorkloadShape):
    pass
