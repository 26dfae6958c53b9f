"""/metrics (to be built by the metrics helper): ``metrics_router(gatherer) -> APIRouter``."""
