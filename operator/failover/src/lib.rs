//! Failover between the two datacenters (issue 7): decides from health what to do, and does it
//! under an etcd lease with every action fenced by the store's revision.
