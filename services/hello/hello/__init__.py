"""hello: the example Tornado service that fabship ships and deploys."""
