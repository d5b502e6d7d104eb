"""Whatever the scenario says: its [load] schedule and journey mix, unchanged.

    GROUPBUY_ADMIN_TOKEN=TOKEN locust -f loadtests/scenario.py --host http://127.0.0.1:PORT \
        --scenario scenarios/default.toml

`groupbuy loadtest` runs this locustfile with the plan it prepared (`--plan`).
"""

from loadtests.openload import OpenWorkloadShape, OpenWorkloadUser


class ScenarioShopper(OpenWorkloadUser):
    default_scenario = "scenarios/default.toml"


class ScenarioArrivals(OpenWorkloadShape):
    pass
