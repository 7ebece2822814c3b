"""DNS: the records state wants, planned against a provider's and applied.

Scope. Only names strictly under the managed suffixes (e.g. `infr.example.com`,
`vnet.example.com`) are looked at; nothing else in the zone is ever changed.

Ownership. DNS changes whole RRsets (one name and type, one TTL), so infr owns RRsets. For
each RRset it creates, infr writes a marker, in the style of octoDNS's ownership processor
and external-dns's TXT registry::

    _infr-owner.<type>.<name>  TXT  "infr owner=<owner-id>"

e.g. `_infr-owner.a.web1.infr.example.com` marks the A records of `web1.infr.example.com`.
The type in the marker's name lets an A RRset be infr's while someone else's AAAA or TXT at
the same name stays theirs. An RRset under the suffixes without our marker (none, or
another owner's) is FOREIGN: listed, never changed or deleted, unless `adopt` is given,
which takes it over (and, if no longer desired, deletes it).

Order. The marker is written before the records it marks and deleted after them, and a
failed change skips the later changes of its RRset: a partial failure never leaves records
of ours without a marker, so the next plan, computed from what the provider then holds,
finishes the job instead of calling our own records FOREIGN.

Safety. As in octoDNS, when at least 10 managed records exist, a plan that updates or
deletes more than 30% of them is refused unless forced.
"""
