"""The SimPy model of one campaign run, in parts that each own their state:

- `arrivals`: the NHPP of first-time arrivals; `seeds`: replication seeds (common random numbers);
- `behaviour`: demand shapes, a group's expected price, invite counts;
- `prices`: cached `campaign.pricing.price_order` quotes and ladders;
- `stock`, `ledger` (money and the subsidy budget), `perks` (coupon pools, gifts), `groups`
  (open groups and the choice rule), `referrals` (referral trees), `recorder` (everything
  observed);
- `campaign`: the SimPy processes that move them (`simulate_once`);
- `results`: KPI names, `RunResult`, `Recording`.
"""

from sim.model.arrivals import sample_arrivals
from sim.model.campaign import PAY_DELAY_MINUTES, simulate_once
from sim.model.results import KPI_NAMES, MONEY_KPIS, GroupRecord, Recording, RunResult, sale_minutes
from sim.model.seeds import child_seed, child_seeds

__all__ = [
    "KPI_NAMES",
    "MONEY_KPIS",
    "PAY_DELAY_MINUTES",
    "GroupRecord",
    "Recording",
    "RunResult",
    "child_seed",
    "child_seeds",
    "sale_minutes",
    "sample_arrivals",
    "simulate_once",
]
