"""What every section of the daemon's config shares: unknown keys are errors, names are topic levels."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

#: Camera, zone and line names and the topic prefix become MQTT topic levels: no wildcards, separators or spaces.
TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_\-]+$")


class Strict(BaseModel):
    """A config section whose unknown keys are rejected (reported as ``<key path>: unknown key``)."""

    model_config = ConfigDict(extra="forbid")
