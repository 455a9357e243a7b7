"""The API from a component's side: REST client, informers, work queue, events, leader election."""
