"""Load tests for any server that speaks the checkout contract (reference_server/CONTRACT.md).

Locustfiles (`flash_sale.py`, `group_buy.py`, `coupon_grab.py`, `mixed.py`, `scenario.py`)
drive an open workload (`openload`, `journeys`), record every operation as a typed history
(`history`), break things on purpose while it runs (`faults`), read the server's final state
(`api`, `state`), and the checker (`checker`, one module per concern) proves the invariants
from the two. `harness` runs it all for `groupbuy loadtest`. HTTP only: nothing here imports
the reference server or the simulation.
"""
