import dataclasses
from pathlib import Path

import pytest

from fenlei.errors import InvalidInput
from fenlei.runtime.settings import ServiceSettings, load_settings


@dataclasses.dataclass(frozen=True)
class Custom(ServiceSettings):
    default_model: str = ""
    verbose: bool = False


def test_service_prefix_wins_over_shared_and_defaults() -> None:
    env = {"FENLEI_HOME": "/srv/fenlei", "FENLEI_PORT": "1", "FENLEI_PIPELINE_PORT": "7000", "FENLEI_PIPELINE_VERBOSE": "yes"}
    settings = load_settings(Custom, "pipeline", env)
    assert settings.home == Path("/srv/fenlei")
    assert settings.port == 7000
    assert settings.verbose is True
    assert settings.default_model == ""
    assert settings.max_batch_documents == ServiceSettings().max_batch_documents


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(InvalidInput, match="FENLEI_SEGMENTER_PORT"):
        load_settings(ServiceSettings, "segmenter", {"FENLEI_SEGMENTER_PORT": "http"})
    with pytest.raises(InvalidInput, match="FENLEI_PIPELINE_VERBOSE"):
        load_settings(Custom, "pipeline", {"FENLEI_PIPELINE_VERBOSE": "maybe"})
