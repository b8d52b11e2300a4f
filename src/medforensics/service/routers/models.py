"""``/v1/models``: the detectors this server knows, and the one its workers run."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from medforensics.service.auth import Principal
from medforensics.service.deps import get_state, reader
from medforensics.service.schemas import AUTH_ERRORS, ModelInfo, ModelList
from medforensics.service.state import ServiceState

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, summary="Registered detectors", responses=AUTH_ERRORS)
async def list_models(
    state: ServiceState = Depends(get_state), principal: Principal = Depends(reader)
) -> ModelList:
    """Every registered detector with its description (training data, calibration, version);
    ``active`` marks the one analyses run with."""
    catalogue = await run_in_threadpool(state.model_catalogue)
    models = [ModelInfo(**entry) for entry in catalogue]
    loaded = state.pool.model_description()
    if loaded is not None:  # what the workers actually loaded wins over a fresh instance
        for model in models:
            if model.active:
                model.description = loaded
    return ModelList(active=state.settings.detector, models=models)
