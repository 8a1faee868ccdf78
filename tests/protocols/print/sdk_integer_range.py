"""Run under .venv-msgraph: parse integerRange objects with msgraph-beta-sdk's IntegerRange model, as the SDK
does for every response.

stdin: a JSON list of integerRange objects; stdout: ``[[start, end], ...]`` as the SDK reads them.
"""

import json
import sys

from kiota_serialization_json.json_parse_node import JsonParseNode
from msgraph_beta.generated.models.integer_range import IntegerRange

ranges = JsonParseNode(json.load(sys.stdin)).get_collection_of_object_values(IntegerRange)
json.dump([[r.start, r.end] for r in ranges], sys.stdout)
