//! The Rust API Auto Scaling uses (target_group, register_instance, deregister_instance,
//! instance_health, request_count) over a real engine in a temporary data directory, with
//! instance rows written directly (no VMs): registration rules, health of stopped and
//! terminated instances, and real traffic to an instance's public address (127.0.0.1 here,
//! where the test serves HTTP).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use awsquery::{Caller, Params, Service};
use catalog::{ResourceRow, now_ms};
use elb::{Elb, ElbOptions};
use engine::instances::InstanceDoc;
use engine::network::InstanceNetwork;
use engine::query::Page;
use engine::{Cloud, DataDir};

struct Env {
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
    cloud: Arc<Cloud>,
    elb: Arc<Elb>,
    caller: Caller,
    vpc: String,
    subnets: Vec<String>,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(&dir.path().join("data"), true).unwrap();
    let cloud = Cloud::open(data, &["us-east-1".to_string()]).unwrap();
    let (account_id, _, _) = cloud.create_account("t", None, None).unwrap();
    let caller = Caller {
        account_id: account_id.clone(),
        region: "us-east-1".into(),
    };
    let ec = engine::Caller {
        account_id,
        region: "us-east-1".into(),
    };
    let subnets = cloud
        .describe_subnets(&ec, &[], &[], &Page::default())
        .unwrap()
        .0;
    let vpc = subnets[0].doc.vpc_id.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n = u32::from_be_bytes(engine::ids::random_bytes::<4>());
    let pool = format!("127.{}.{}.0/24", 103 + n % 140, (n >> 8) % 256);
    let elb = Elb::open(
        Arc::clone(&cloud),
        ElbOptions { address_pool: pool },
        rt.handle().clone(),
    )
    .unwrap();
    Env {
        _dir: dir,
        _rt: rt,
        cloud,
        elb,
        caller,
        vpc,
        subnets: subnets.into_iter().map(|s| s.id).collect(),
    }
}

fn put_instance(env: &Env, id: &str, state: &str, vpc: &str, public_ip: Option<&str>) {
    let doc = InstanceDoc {
        network: Some(InstanceNetwork {
            vpc_id: vpc.into(),
            public_ip: public_ip.map(str::to_string),
            ..Default::default()
        }),
        ..Default::default()
    };
    let row = ResourceRow {
        id: id.into(),
        kind: engine::instances::KIND.into(),
        account_id: env.caller.account_id.clone(),
        region: env.caller.region.clone(),
        state: state.into(),
        doc: serde_json::to_string(&doc).unwrap(),
        created_at_ms: now_ms(),
    };
    if env.cloud.catalog().resource(id).unwrap().is_some() {
        env.cloud
            .catalog()
            .update_resource(id, state, &row.doc)
            .unwrap();
    } else {
        env.cloud.catalog().insert_resource(&row).unwrap();
    }
}

fn call(env: &Env, action: &str, pairs: &[(&str, &str)]) -> String {
    env.elb
        .call(
            &env.caller,
            action,
            &Params::from_pairs(pairs.iter().copied()),
        )
        .unwrap_or_else(|e| panic!("{action}: {e}"))
        .unwrap_or_default()
}

fn between(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).unwrap() + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap();
    xml[start..start + end].to_string()
}

fn wait_health(env: &Env, tg: &str, id: &str, want: &str) -> elb::InstanceHealth {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = env.elb.instance_health(&env.caller, tg, id).unwrap();
        if h.state == want || Instant::now() > deadline {
            assert_eq!(h.state, want, "{id}: {h:?}");
            return h;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

const I_RUN: &str = "i-0aaaaaaaaaaaaaaa1";
const I_STOP: &str = "i-0aaaaaaaaaaaaaaa2";
const I_FAR: &str = "i-0aaaaaaaaaaaaaaa3";

#[test]
fn registration_rules_and_instance_states() {
    let env = env();
    put_instance(&env, I_RUN, "running", &env.vpc, Some("127.100.200.7"));
    put_instance(&env, I_STOP, "stopped", &env.vpc, None);
    put_instance(
        &env,
        I_FAR,
        "running",
        "vpc-0ffffffffffffffff",
        Some("127.100.200.8"),
    );
    let xml = call(
        &env,
        "CreateTargetGroup",
        &[
            ("Name", "asg-tg"),
            ("Protocol", "HTTP"),
            ("Port", "8080"),
            ("VpcId", &env.vpc),
        ],
    );
    let tg = between(&xml, "TargetGroupArn");
    let summary = env.elb.target_group(&env.caller, &tg).unwrap();
    assert_eq!(summary.port, 8080);
    assert_eq!(summary.deregistration_delay_seconds, 300);
    assert!(summary.load_balancer_arns.is_empty());
    let missing = format!("{tg}0");
    assert_eq!(
        env.elb
            .target_group(&env.caller, &missing)
            .unwrap_err()
            .code,
        "TargetGroupNotFound"
    );

    let e = env
        .elb
        .register_instance(&env.caller, &tg, I_STOP)
        .unwrap_err();
    assert_eq!(e.code, "InvalidTarget");
    assert_eq!(
        e.message,
        format!(
            "The following targets are not in a running state and cannot be registered: '{I_STOP}'"
        )
    );
    let e = env
        .elb
        .register_instance(&env.caller, &tg, I_FAR)
        .unwrap_err();
    assert_eq!(e.code, "InvalidTarget");
    let e = env
        .elb
        .register_instance(&env.caller, &tg, "i-0bbbbbbbbbbbbbbb9")
        .unwrap_err();
    assert_eq!(e.code, "InvalidTarget");

    env.elb.register_instance(&env.caller, &tg, I_RUN).unwrap();
    let h = wait_health(&env, &tg, I_RUN, "unused");
    assert_eq!(h.reason.as_deref(), Some("Target.NotInUse"));
    let h = env.elb.instance_health(&env.caller, &tg, I_STOP).unwrap();
    assert_eq!(
        (h.state.as_str(), h.reason.as_deref()),
        ("unused", Some("Target.NotRegistered"))
    );

    // Stopped after registration: unreachable, Target.InvalidState.
    put_instance(&env, I_RUN, "stopped", &env.vpc, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = env.elb.instance_health(&env.caller, &tg, I_RUN).unwrap();
        if h.reason.as_deref() == Some("Target.InvalidState") {
            break;
        }
        assert!(Instant::now() < deadline, "{h:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Terminated: it leaves the group.
    put_instance(&env, I_RUN, "terminated", &env.vpc, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = call(&env, "DescribeTargetHealth", &[("TargetGroupArn", &tg)]);
        let h = env.elb.instance_health(&env.caller, &tg, I_RUN).unwrap();
        if !out.contains(I_RUN) || h.state == "draining" {
            break;
        }
        assert!(Instant::now() < deadline, "{out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(env.elb.request_count(&env.caller, &tg).unwrap(), 0);
    env.elb.shutdown();
}

/// A one-response-per-connection HTTP server on 127.0.0.1.
fn serve(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    port
}

#[test]
fn instance_target_serves_traffic_and_counts_requests() {
    let env = env();
    let backend = serve("from the instance");
    // The instance's public address is 127.0.0.1, where the test serves.
    put_instance(&env, I_RUN, "running", &env.vpc, Some("127.0.0.1"));
    let port = backend.to_string();
    let xml = call(
        &env,
        "CreateTargetGroup",
        &[
            ("Name", "asg-web"),
            ("Protocol", "HTTP"),
            ("Port", &port),
            ("VpcId", &env.vpc),
            ("HealthCheckIntervalSeconds", "5"),
            ("HealthCheckTimeoutSeconds", "2"),
            ("HealthyThresholdCount", "2"),
        ],
    );
    let tg = between(&xml, "TargetGroupArn");
    let xml = call(
        &env,
        "CreateLoadBalancer",
        &[
            ("Name", "asg-lb"),
            ("Subnets.member.1", &env.subnets[0]),
            ("Subnets.member.2", &env.subnets[1]),
        ],
    );
    let lb = between(&xml, "LoadBalancerArn");
    let addr = between(&xml, "IpAddress");
    let n = u16::from_be_bytes(engine::ids::random_bytes::<2>());
    let lport = (20000 + n % 40000).to_string();
    call(
        &env,
        "CreateListener",
        &[
            ("LoadBalancerArn", &lb),
            ("Protocol", "HTTP"),
            ("Port", &lport),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &tg),
        ],
    );
    assert_eq!(
        env.elb
            .target_group(&env.caller, &tg)
            .unwrap()
            .load_balancer_arns,
        vec![lb.clone()]
    );
    env.elb.register_instance(&env.caller, &tg, I_RUN).unwrap();
    wait_health(&env, &tg, I_RUN, "healthy");
    let mut conn = TcpStream::connect(format!("{addr}:{lport}")).unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("from the instance"), "{reply}");
    assert_eq!(env.elb.request_count(&env.caller, &tg).unwrap(), 1);

    env.elb
        .deregister_instance(&env.caller, &tg, I_RUN)
        .unwrap();
    let h = env.elb.instance_health(&env.caller, &tg, I_RUN).unwrap();
    assert!(h.state == "draining" || h.state == "unused", "{h:?}");
    env.elb.shutdown();
}

#[test]
fn reopening_drops_listeners_of_vanished_load_balancers() {
    let env = env();
    let xml = call(
        &env,
        "CreateTargetGroup",
        &[
            ("Name", "orphan-tg"),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("VpcId", &env.vpc),
        ],
    );
    let tg = between(&xml, "TargetGroupArn");
    let xml = call(
        &env,
        "CreateLoadBalancer",
        &[
            ("Name", "orphan"),
            ("Subnets.member.1", &env.subnets[0]),
            ("Subnets.member.2", &env.subnets[1]),
        ],
    );
    let lb = between(&xml, "LoadBalancerArn");
    let n = u16::from_be_bytes(engine::ids::random_bytes::<2>());
    let lport = (20000 + n % 40000).to_string();
    let xml = call(
        &env,
        "CreateListener",
        &[
            ("LoadBalancerArn", &lb),
            ("Port", &lport),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &tg),
        ],
    );
    let listener = between(&xml, "ListenerArn");
    env.elb.shutdown();
    // As if openami died between deleting the load balancer's row and its listener's.
    env.cloud.catalog().delete_resource(&lb).unwrap();
    let again = Elb::open(
        Arc::clone(&env.cloud),
        ElbOptions {
            address_pool: "127.250.250.0/24".into(),
        },
        env._rt.handle().clone(),
    )
    .unwrap();
    assert!(env.cloud.catalog().resource(&listener).unwrap().is_none());
    let e = again
        .call(
            &env.caller,
            "DescribeListeners",
            &Params::from_pairs([("ListenerArns.member.1", listener.as_str())]),
        )
        .unwrap_err();
    assert_eq!(e.code, "ListenerNotFound");
    // The group is free again.
    assert!(
        again
            .target_group(&env.caller, &tg)
            .unwrap()
            .load_balancer_arns
            .is_empty()
    );
    again.shutdown();
}
