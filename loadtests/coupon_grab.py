"""Coupon grab: a crowd claims coupons from a limited pool and spends them; over-issuing the
pool (优惠券超发) or a per-user limit is what the checker looks for.

    GROUPBUY_ADMIN_TOKEN=TOKEN locust -f loadtests/coupon_grab.py --host http://127.0.0.1:PORT

Runs `scenarios/flash_sale.toml` (or `--scenario`) with a coupon-heavy journey mix.
"""

from typing import ClassVar

from loadtests.openload import OpenWorkloadShape, OpenWorkloadUser


class CouponGrabber(OpenWorkloadUser):
    default_scenario = "scenarios/flash_sale.toml"
    mix: ClassVar[dict[str, float] | None] = {"coupon": 0.9, "browse": 0.1}


class CouponGrabArrivals(OpenWorkloadShape):
    pass
