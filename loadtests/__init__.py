"""Load tests for any server that speaks the checkout contract (reference_server/CONTRACT.md).

Locustfiles (`flash_sale.py`, `group_buy.py`, `coupon_grab.py`, `mixed.py`, `scenario.py`)
drive an open workload (`openload`), record every operation (`history`), and the checker
(`checker`) proves the inventory invariants from the history and the server's final state.
HTTP only: nothing here imports the reference server or the simulation.
"""
