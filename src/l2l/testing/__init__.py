"""Contract suites that every search space, controller and executor passes; plugin authors subclass them."""
