"""Reports: what Lethe writes for people and auditors (certificates; the access package, plan reports and
the data map are to move here too). Reports read the ledger's records; they decide nothing."""
