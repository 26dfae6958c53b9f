"""The dashboard at / (to be built by the dashboard helper): ``dashboard_router() -> APIRouter``."""
