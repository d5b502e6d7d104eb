"""The routers the app includes, one per area."""

from fastapi import APIRouter

from reference_server.api.routes import admin, catalog, coupons, groups, orders, utils

api_router = APIRouter()
for _area in (utils, catalog, orders, groups, coupons, admin):
    api_router.include_router(_area.router)
