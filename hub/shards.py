"""The shard map (issue 8, scale-out): which hub worker runs which community, and which take it over when it dies.

One YAML file, the same on every worker (configuration management copies it, as it does the deployment files)::

    version: 1
    standby_delay_s: 5          # at start, a standby waits this long per rank before it may take a free lease
    communities:
      jinjiang-hongxing:
        deployment: hongxing/deployment.yaml    # relative paths are relative to this file
        data_dir: /var/lib/anju/jinjiang-hongxing
        http_port: 8101
        workers: [hub-1, hub-2]                 # the first runs it; the others, in order, are its standbys
    hosts:                      # optional: the address each worker's hubs listen on (and a proxy reaches them at)
      hub-1: hub-1.example.org
      hub-2: hub-2.example.org
    sub_districts:              # optional: 街道 and their communities, for the district node's scopes
      chunxi:
        name: 春熙路街道
        communities: [jinjiang-hongxing]

A worker (``anju-hub worker --name hub-1``, hub/worker.py) runs one hub process for every community that names it,
each waiting for that community's lease in PostgreSQL (hub/lease.py): the owner takes it at once, a standby when
the holder's term runs out. A community's HTTP port and data directory are the same on every worker that may run
it, so a reverse proxy in front of the workers finds a community at one port wherever it runs now.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from hub.config import ConfigError, ConfigIssue, issue_at, load_deployment, load_model

__all__ = ["Assignment", "CommunityShard", "ShardMap", "SubDistrict", "load_shard_map"]

CommunityId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
WorkerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,63}$")]
Host = Annotated[str, StringConstraints(pattern=r"^([A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}$|^\[?[0-9A-Fa-f:]+\]?$")]
"""An IPv4 address or a host name (letters, digits, hyphens, dots), or an IPv6 address."""
"""A worker's name; with ``:`` and the community's id it is the lease holder (``anju-hub leases`` shows it), at
most 128 characters."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class CommunityShard(_Strict):
    deployment: Path
    data_dir: Path
    http_port: int = Field(ge=1, le=65535)
    workers: list[WorkerName] = Field(min_length=1)

    @field_validator("workers")
    @classmethod
    def _once_each(cls, workers: list[str]) -> list[str]:
        twice = sorted(name for name, count in Counter(workers).items() if count > 1)
        if twice:
            raise ValueError(f"a worker is named more than once: {', '.join(twice)}")
        return workers


class SubDistrict(_Strict):
    """A sub-district (街道): a user of the district node standing for it sees its communities (hub/district/)."""

    name: str = Field(min_length=1, max_length=64)
    """Its name as people read it, 春熙路街道."""
    communities: list[CommunityId] = Field(min_length=1)


class ShardMap(_Strict):
    version: Literal[1]
    standby_delay_s: float = Field(default=5.0, ge=0, le=300)
    """At a worker's start, seconds a community's n-th standby waits (n × this) before it may take the lease: when
    the whole fleet starts together, each community lands on its owner, not on whichever worker came up first."""
    communities: dict[CommunityId, CommunityShard] = Field(min_length=1)
    hosts: dict[WorkerName, Host] = Field(default_factory=dict)
    """Worker → the address its hubs listen on (their ``http_host``) and a reverse proxy reaches them at
    (``anju-hub shards proxy``); a worker not listed keeps the hub's own setting (127.0.0.1 by default)."""
    sub_districts: dict[CommunityId, SubDistrict] = Field(default_factory=dict)
    """Sub-district id → its name and communities; each community in one sub-district at most."""

    def workers(self) -> list[str]:
        """Every worker named in the map, sorted."""
        return sorted({name for shard in self.communities.values() for name in shard.workers})

    def assignments(self, worker: str) -> list[Assignment]:
        """The communities ``worker`` runs or stands by for, in the map's order."""
        return [
            Assignment(community, shard, shard.workers.index(worker))
            for community, shard in self.communities.items()
            if worker in shard.workers
        ]


@dataclass(frozen=True, slots=True)
class Assignment:
    """One community of a worker: ``rank`` 0 owns it, 1 is its first standby, and so on."""

    community: str
    shard: CommunityShard
    rank: int

    @property
    def role(self) -> Literal["owner", "standby"]:
        return "owner" if self.rank == 0 else "standby"


def load_shard_map(
    path: str | os.PathLike[str], *, check_deployments: bool = True, worker: str | None = None
) -> ShardMap:
    """Read and validate a shard map; paths in it become absolute (relative ones are relative to the file).

    Raises ConfigError listing every problem with its line: the schema, a port or data directory given to two
    communities, and (``check_deployments``) a deployment file that does not load or is another community's — only
    those of ``worker``'s communities when it is given (a worker need not read a whole city's files to start)."""
    file = Path(path)
    name, document, raw = load_model(file, ShardMap)
    base = file.resolve().parent
    shards = ShardMap(
        version=raw.version,
        standby_delay_s=raw.standby_delay_s,
        hosts=raw.hosts,
        sub_districts=raw.sub_districts,
        communities={
            community: shard.model_copy(
                update={"deployment": base / shard.deployment, "data_dir": base / shard.data_dir}
            )
            for community, shard in raw.communities.items()
        },
    )
    problems = [issue_at(document, loc, value, message) for loc, value, message in _clashes(shards)]
    problems.extend(
        issue_at(document, ("hosts", worker), host, "not a worker of any community")
        for worker, host in shards.hosts.items()
        if worker not in shards.workers()
    )
    problems.extend(issue_at(document, loc, value, message) for loc, value, message in _sub_district_problems(shards))
    if check_deployments:
        names = set(shards.communities) if worker is None else {a.community for a in shards.assignments(worker)}
        problems.extend(_deployment_problems(shards, document, names))
    if problems:
        raise ConfigError(name, problems)
    return shards


def _sub_district_problems(shards: ShardMap) -> Iterable[tuple[tuple[str | int, ...], object, str]]:
    """A sub-district's community the map does not run, or one claimed by two sub-districts."""
    first: dict[str, str] = {}
    for sub_district, entry in shards.sub_districts.items():
        for index, community in enumerate(entry.communities):
            loc: tuple[str | int, ...] = ("sub_districts", sub_district, "communities", index)
            if community not in shards.communities:
                yield loc, community, "not a community of this map"
            elif community in first:
                yield loc, community, f"already in the sub-district {first[community]!r}"
            else:
                first[community] = sub_district


def _clashes(shards: ShardMap) -> Iterable[tuple[tuple[str, ...], object, str]]:
    """A port or data directory given to two communities: any worker may have to run both at once."""
    for field in ("http_port", "data_dir"):
        first: dict[Any, str] = {}
        for community, shard in shards.communities.items():
            value = getattr(shard, field)
            if value in first:
                shown = value if isinstance(value, int) else str(value)
                yield ("communities", community, field), shown, f"also the {field} of {first[value]}"
            else:
                first[value] = community


def _deployment_problems(shards: ShardMap, document: Any, communities: Collection[str]) -> Iterable[ConfigIssue]:
    for community, shard in shards.communities.items():
        if community not in communities:
            continue
        loc = ("communities", community, "deployment")
        try:
            deployment = load_deployment(shard.deployment)
        except ConfigError as exc:
            first = exc.issues[0].render(exc.file)
            more = f" (and {len(exc.issues) - 1} more)" if len(exc.issues) > 1 else ""
            yield issue_at(document, loc, str(shard.deployment), f"does not load: {first}{more}")
            continue
        if deployment.community.id != community:
            yield issue_at(
                document, loc, str(shard.deployment), f"is the deployment of {deployment.community.id}, not {community}"
            )
