"""Flash sale (秒杀): one hot SKU, small stock, a burst at opening.

    GROUPBUY_ADMIN_TOKEN=TOKEN locust -f loadtests/flash_sale.py --host http://127.0.0.1:PORT

Runs `scenarios/flash_sale.toml` (or `--scenario`): its [load] phases as an open workload,
shoppers reserving the hot SKU and paying, some abandoning, some cancelling.
"""

from loadtests.openload import OpenWorkloadShape, OpenWorkloadUser


class FlashSaleShopper(OpenWorkloadUser):
    default_scenario = "scenarios/flash_sale.toml"


class FlashSaleArrivals(OpenWorkloadShape):
    pass
