"""Land claims: a borrower's plots from the files farmers bring, their history and
backfill from the archive, and the land-cover model that says what is on them."""
