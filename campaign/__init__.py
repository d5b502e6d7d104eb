"""The shared language of the lab: the scenario schema and the promotion/pricing rules.

Pure: imports none of the wings (`sim`, `reference_server`, `loadtests`).
"""

from campaign.errors import ScenarioError
from campaign.pricing import PriceContext, PriceQuote, price_order, to_cents
from campaign.scenario import Scenario, load_scenario, parse_scenario

__all__ = [
    "PriceContext",
    "PriceQuote",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_scenario",
    "price_order",
    "to_cents",
]
