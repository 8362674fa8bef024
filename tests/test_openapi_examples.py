"""Every /v1 route shows a realistic example of its success response in the OpenAPI schema, and
each example is what the route could answer: it decodes as the route's Struct."""

import msgspec
import pytest
from litestar.openapi.spec import Example
from litestar.testing import AsyncTestClient

from services.api import examples, users
from services.api.app import create_app
from services.api.boards import Achievements, CurrentBoard, GainsBoard, Stats
from services.api.gains import Gains
from services.api.history import SnapshotPage, Timeline
from services.api.records import Records
from services.api.schemas import (
    Accepted,
    ApiKey,
    ApiKeyList,
    CreatedApiKey,
    LoggedOut,
    Me,
    PlayerDetail,
    PlayerPage,
    TokenResponse,
)
from services.api.users import UserPage
from services.user_store import User

EXAMPLES: list[tuple[type, Example]] = [
    (User, users.USER),
    (UserPage, users.USER_PAGE),
    (PlayerDetail, examples.TRACKED),
    (PlayerPage, examples.PLAYER_PAGE),
    (PlayerDetail, examples.PLAYER),
    (PlayerDetail, examples.CHANGED),
    (Accepted, examples.UNTRACKING),
    (Accepted, examples.FETCHING),
    (Gains, examples.GAINS),
    (SnapshotPage, examples.SNAPSHOTS),
    (Timeline, examples.TIMELINE),
    (Records, examples.RECORDS),
    (CurrentBoard, examples.CURRENT_BOARD),
    (GainsBoard, examples.GAINS_BOARD),
    (Stats, examples.STATS),
    (Achievements, examples.ACHIEVEMENTS),
    (TokenResponse, examples.TOKEN),
    (LoggedOut, examples.LOGGED_OUT),
    (Me, examples.ME),
    (CreatedApiKey, examples.CREATED_API_KEY),
    (ApiKeyList, examples.API_KEYS),
    (ApiKey, examples.REVOKED_API_KEY),
]


@pytest.fixture
async def client(settings, js):
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


def test_every_example_of_the_module_is_checked_here():
    defined = [
        v for module in (examples, users) for v in vars(module).values() if isinstance(v, Example)
    ]
    assert sorted(id(e) for e in defined) == sorted(id(e) for _, e in EXAMPLES)


@pytest.mark.parametrize(
    ("struct", "example"), EXAMPLES, ids=[example.summary for _, example in EXAMPLES]
)
def test_an_example_decodes_as_its_struct_and_encodes_back_unchanged(struct, example):
    decoded = msgspec.json.decode(msgspec.json.encode(example.value), type=struct)
    # Unchanged: no misspelled or unknown field, and datetimes written as the API writes them.
    assert msgspec.to_builtins(decoded) == example.value


async def test_every_v1_operation_shows_an_example_of_its_success_response(client):
    schema = (await client.get("/schema/openapi.json")).json()
    values_by_struct: dict[str, list] = {}
    for struct, example in EXAMPLES:
        values_by_struct.setdefault(struct.__name__, []).append(example.value)
    operations = [
        (f"{method.upper()} {path}", operation)
        for path, item in schema["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
    ]
    assert len(operations) == 25
    for name, operation in operations:
        status = min(code for code in operation["responses"] if code.startswith("2"))
        if status == "204":
            continue  # no content, nothing to show
        content = operation["responses"][status]["content"]["application/json"]
        struct = content["schema"]["$ref"].rsplit("/", 1)[-1]
        shown = [example["value"] for example in content.get("examples", {}).values()]
        assert shown, f"{name} shows no example of its {status} response"
        # The example shown is one checked above against the Struct of the response's schema.
        assert all(value in values_by_struct[struct] for value in shown), name
