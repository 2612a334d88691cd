"""Neural optimizer search: the update-rule language and its compiler to torch optimizers (see issue 3)."""
