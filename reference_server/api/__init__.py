"""The HTTP layer: dependencies (`deps.py`), request bodies (`models.py`), the steps routes share
(`steps.py`) and one router per area (`routes/`), listed in `main.ROUTERS`."""
