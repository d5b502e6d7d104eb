"""Small scenarios for the planner's tests (sweeps, tuning, sensitivity): quick to simulate."""

import tomllib

SMALL_TOML = """\
[campaign]
name = "small test sale"
per_user_limit = 1
subsidy_budget = 100000
fixed_cost = 100

[[campaign.skus]]
id = "tea"
stock = 300
list_price = 50.0
unit_cost = 20.0

[[campaign.phases]]
name = "burst"
hours = 4

[campaign.groups]
window_hours = 2
leader_reward = 2.0
tiers = [
  { size = 2, percent_off = 20 },
  { size = 3, percent_off = 30 },
]

[audience]
arrivals_per_hour = { burst = 60 }

[[audience.segments]]
name = "new"
share = 1.0
base_conversion = 0.3
price_sensitivity = 2.0
share_propensity = 0.3
group_propensity = 0.8
pay_probability = 0.9

[audience.referral]
invites_per_sharer = 1.5
invite_delay_minutes = 20
invitee_conversion = 0.3
depth_cap = 2
"""
SMALL = tomllib.loads(SMALL_TOML)
