"""moto's server (`moto_server`), with two corrections to its S3 Tables answers.

moto 5.2.5 (and 5.2.6) answers, where the S3 Tables API, and so the AWS SDK for Rust
(aws-sdk-s3tables, under the consumers' S3 Tables catalog), has another shape:
- GetTable: `"managedByService": false`, a boolean, where the API has the name of the
  service that manages the table, a string left out when none does; the SDK refuses the
  whole answer ("expected ValueString or ValueNull"). A table no service manages says null.
- UpdateTableMetadataLocation: `"namespace": "<name>"`, where the API has a list of names;
  the SDK refuses the answer ("expected start array or null") to an update that was made,
  which is a lost answer to every commit. The namespace becomes a list.

    scripts/py.sh --iceberg python tests/interop/moto_server.py -H 127.0.0.1 -p 5000
"""

import json

from moto.s3tables import models, responses
from moto.server import main

_created = models.Table.__init__


def _table_init(self, *args, **kwargs):
    _created(self, *args, **kwargs)
    if self.managed_by_service is False:
        self.managed_by_service = None


_updated = responses.S3TablesResponse.update_table_metadata_location


def _update_table_metadata_location(self):
    status, headers, body = _updated(self)
    answer = json.loads(body)
    if isinstance(answer.get("namespace"), str):
        answer["namespace"] = [answer["namespace"]]
    return status, headers, json.dumps(answer)


models.Table.__init__ = _table_init
responses.S3TablesResponse.update_table_metadata_location = _update_table_metadata_location

if __name__ == "__main__":
    main()
