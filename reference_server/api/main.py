"""The routers the app includes, one per area, in matching order."""

from fastapi import APIRouter

from reference_server.api.routes import admin, catalog, coupons, groups, orders, utils

ROUTERS: tuple[APIRouter, ...] = tuple(area.router for area in (
    utils, catalog, orders, groups, coupons, admin))
"""Included by the app one by one: one more level of included routers (an `api_router`
holding these) cost every request a second walk through FastAPI's route matching."""
