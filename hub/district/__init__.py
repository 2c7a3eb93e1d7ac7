"""The district node (区/街道): one read-only API over every community's alert state in the shared PostgreSQL.

A hub serves one community. The district emergency office (区应急办) and each sub-district (街道) need the view
across communities: which communities have open alerts of which grade, which incidents are declared where, and
each alert's steps. ``anju-hub district serve --shard-map city.yaml`` reads every community of the shard map from
its schema (``anju_{community}``) over read-only connections — it writes nothing any hub owns, and needs no lease —
and keeps its own users in the schema ``anju_district``. A sub-district's user sees the communities the shard map
lists under it (``sub_districts:``); the emergency office and admins see all of them.
"""
