//! Tests of the JSON operations, driven through [`handle`] as the HTTP layer calls it.

use super::*;
use serde_json::Value;

const ALICE: &str = "111111111111";
const BOB: &str = "222222222222";
const REGION: &str = "us-east-1";

fn call(c: &Catalog, account: &str, op: &str, body: Value) -> (u16, Value) {
    let target = format!("AmazonSSM.{op}");
    let reply = handle(
        c,
        account,
        REGION,
        Some(&target),
        body.to_string().as_bytes(),
    );
    assert_eq!(reply.operation, op);
    (reply.status, serde_json::from_str(&reply.body).unwrap())
}

fn ok(c: &Catalog, account: &str, op: &str, body: Value) -> Value {
    let (status, v) = call(c, account, op, body);
    assert_eq!(status, 200, "{op}: {v}");
    v
}

fn err(c: &Catalog, account: &str, op: &str, body: Value) -> String {
    let (status, v) = call(c, account, op, body);
    assert_eq!(status, 400, "{op}: {v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    v["__type"].as_str().unwrap().to_string()
}

#[test]
fn put_get_overwrite_versions_and_selectors() {
    let c = Catalog::in_memory().unwrap();
    let v = ok(
        &c,
        ALICE,
        "PutParameter",
        json!({"Name": "/app/db", "Value": "one", "Type": "String", "Description": "d"}),
    );
    assert_eq!(v, json!({"Version": 1, "Tier": "Standard"}));
    assert_eq!(
        err(
            &c,
            ALICE,
            "PutParameter",
            json!({"Name": "/app/db", "Value": "two", "Type": "String"})
        ),
        "ParameterAlreadyExists"
    );
    let v = ok(
        &c,
        ALICE,
        "PutParameter",
        json!({"Name": "/app/db", "Value": "two", "Overwrite": true}),
    );
    assert_eq!(v["Version"], 2);
    let p = &ok(&c, ALICE, "GetParameter", json!({"Name": "/app/db"}))["Parameter"];
    assert_eq!(p["Value"], "two");
    assert_eq!(p["Type"], "String");
    assert_eq!(p["DataType"], "text");
    assert_eq!(
        p["ARN"],
        format!("arn:aws:ssm:{REGION}:{ALICE}:parameter/app/db")
    );
    assert!(p.get("Selector").is_none());
    assert!(p["LastModifiedDate"].as_f64().unwrap() > 1.7e9);
    let p = &ok(&c, ALICE, "GetParameter", json!({"Name": "/app/db:1"}))["Parameter"];
    assert_eq!(
        (p["Value"].as_str(), p["Selector"].as_str()),
        (Some("one"), Some(":1"))
    );
    assert_eq!(
        err(&c, ALICE, "GetParameter", json!({"Name": "/app/db:7"})),
        "ParameterVersionNotFound"
    );
    assert_eq!(
        err(&c, ALICE, "GetParameter", json!({"Name": "/app/nope"})),
        "ParameterNotFound"
    );
    assert_eq!(
        err(&c, BOB, "GetParameter", json!({"Name": "/app/db"})),
        "ParameterNotFound"
    );
    let h = ok(
        &c,
        ALICE,
        "GetParameterHistory",
        json!({"Name": "/app/db", "MaxResults": 1}),
    );
    assert_eq!(h["Parameters"][0]["Value"], "one");
    assert_eq!(h["Parameters"][0]["Description"], "d");
    let h2 = ok(
        &c,
        ALICE,
        "GetParameterHistory",
        json!({"Name": "/app/db", "NextToken": h["NextToken"]}),
    );
    assert_eq!(h2["Parameters"][0]["Value"], "two");
    assert_eq!(h2["Parameters"][0]["Description"], "d", "kept on overwrite");
    assert!(h2.get("NextToken").is_none());
}

#[test]
fn validation_errors() {
    let c = Catalog::in_memory().unwrap();
    for (body, code) in [
        (json!({"Name": "/a", "Value": "v"}), "ValidationException"),
        (
            json!({"Name": "/a", "Value": "v", "Type": "Number"}),
            "ValidationException",
        ),
        (
            json!({"Name": "a/b", "Value": "v", "Type": "String"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/a", "Type": "String"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/a", "Value": 3, "Type": "String"}),
            "SerializationException",
        ),
        (
            json!({"Name": format!("/{}", "a/".repeat(15) + "b"), "Value": "v", "Type": "String"}),
            "HierarchyLevelLimitExceededException",
        ),
        (
            json!({"Name": "/a", "Value": "v", "Type": "SecureString", "KeyId": "alias/mine"}),
            "InvalidKeyId",
        ),
        (
            json!({"Name": "/a", "Value": "v", "Type": "String", "DataType": "aws:ec2:image"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/a", "Value": "v", "Type": "String", "Overwrite": true, "Tags": [{"Key": "k", "Value": "v"}]}),
            "ValidationException",
        ),
        (
            json!({"Name": "/aws/service/x", "Value": "v", "Type": "String"}),
            "AccessDeniedException",
        ),
        (
            json!({"Name": "/ssm/x", "Value": "v", "Type": "String"}),
            "ValidationException",
        ),
    ] {
        assert_eq!(err(&c, ALICE, "PutParameter", body.clone()), code, "{body}");
    }
    assert_eq!(
        err(
            &c,
            ALICE,
            "GetParametersByPath",
            json!({"Path": "/", "MaxResults": 11})
        ),
        "ValidationException"
    );
    assert_eq!(
        err(
            &c,
            ALICE,
            "GetParametersByPath",
            json!({"Path": "/", "NextToken": "zz"})
        ),
        "InvalidNextToken"
    );
    assert_eq!(
        err(
            &c,
            ALICE,
            "GetParametersByPath",
            json!({"Path": "/", "ParameterFilters": [{"Key": "Name", "Values": ["x"]}]})
        ),
        "InvalidFilterKey"
    );
    assert_eq!(
        err(
            &c,
            ALICE,
            "DeleteParameter",
            json!({"Name": "/aws/service/x"})
        ),
        "AccessDeniedException"
    );
    let reply = handle(&c, ALICE, REGION, Some("AmazonSSM.SendCommand"), b"{}");
    assert_eq!(
        (reply.status, reply.operation.as_str()),
        (400, "SendCommand")
    );
    assert!(reply.body.contains("\"InvalidAction\""));
    let reply = handle(
        &c,
        ALICE,
        REGION,
        Some("AmazonSSM.GetParameter"),
        b"not json",
    );
    assert!(reply.body.contains("SerializationException"));
}

#[test]
fn secure_strings_and_image_data_type() {
    let c = Catalog::in_memory().unwrap();
    ok(
        &c,
        ALICE,
        "PutParameter",
        json!({"Name": "pw", "Value": "s3cret", "Type": "SecureString"}),
    );
    let p = &ok(
        &c,
        ALICE,
        "GetParameter",
        json!({"Name": "pw", "WithDecryption": true}),
    )["Parameter"];
    assert_eq!(
        (p["Value"].as_str(), p["Type"].as_str()),
        (Some("s3cret"), Some("SecureString"))
    );
    assert_eq!(
        p["ARN"],
        format!("arn:aws:ssm:{REGION}:{ALICE}:parameter/pw")
    );
    let d = ok(&c, ALICE, "DescribeParameters", json!({}));
    assert_eq!(d["Parameters"][0]["KeyId"], "alias/aws/ssm");
    ok(
        &c,
        ALICE,
        "PutParameter",
        json!({"Name": "/img", "Value": "ami-0123456789abcdef0", "Type": "String", "DataType": "aws:ec2:image"}),
    );
    let v = ok(
        &c,
        ALICE,
        "PutParameter",
        json!({"Name": "/img", "Value": "ami-0123456789abcdef1", "Overwrite": true}),
    );
    assert_eq!(v["Version"], 2);
    assert_eq!(
        ok(&c, ALICE, "GetParameter", json!({"Name": "/img"}))["Parameter"]["DataType"],
        "aws:ec2:image"
    );
    assert_eq!(
        err(
            &c,
            ALICE,
            "PutParameter",
            json!({"Name": "/img", "Value": "nope", "Overwrite": true})
        ),
        "ValidationException",
        "the data type is kept on overwrite, so the value is checked"
    );
}

#[test]
fn by_path_get_many_describe_delete() {
    let c = Catalog::in_memory().unwrap();
    for name in ["/p/a", "/p/b", "/p/c/d", "/p/c/e/f", "/q/x", "flat"] {
        ok(
            &c,
            ALICE,
            "PutParameter",
            json!({"Name": name, "Value": name, "Type": "String", "Tags": [{"Key": "n", "Value": name}]}),
        );
    }
    ok(
        &c,
        ALICE,
        "PutParameter",
        json!({"Name": "/p/s", "Value": "x", "Type": "SecureString"}),
    );
    let names = |v: &Value| -> Vec<String> {
        v["Parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["Name"].as_str().unwrap().to_string())
            .collect()
    };
    let one = ok(&c, ALICE, "GetParametersByPath", json!({"Path": "/p"}));
    assert_eq!(names(&one), ["/p/a", "/p/b", "/p/s"]);
    let all = ok(
        &c,
        ALICE,
        "GetParametersByPath",
        json!({"Path": "/p/", "Recursive": true}),
    );
    assert_eq!(names(&all), ["/p/a", "/p/b", "/p/c/d", "/p/c/e/f", "/p/s"]);
    let root = ok(&c, ALICE, "GetParametersByPath", json!({"Path": "/"}));
    assert_eq!(names(&root), ["flat"]);
    let mut seen = Vec::new();
    let mut token = Value::Null;
    loop {
        let page = ok(
            &c,
            ALICE,
            "GetParametersByPath",
            json!({"Path": "/", "Recursive": true, "MaxResults": 2, "NextToken": token}),
        );
        assert!(names(&page).len() <= 2);
        seen.extend(names(&page));
        token = page.get("NextToken").cloned().unwrap_or(Value::Null);
        if token.is_null() {
            break;
        }
    }
    assert_eq!(seen.len(), 7);
    let secure = ok(
        &c,
        ALICE,
        "GetParametersByPath",
        json!({"Path": "/p", "Recursive": true, "ParameterFilters": [{"Key": "Type", "Values": ["SecureString"]}]}),
    );
    assert_eq!(names(&secure), ["/p/s"]);
    let tagged = ok(
        &c,
        ALICE,
        "GetParametersByPath",
        json!({"Path": "/", "Recursive": true, "ParameterFilters": [{"Key": "tag:n", "Values": ["/q/x"]}]}),
    );
    assert_eq!(names(&tagged), ["/q/x"]);
    assert!(
        names(&ok(
            &c,
            BOB,
            "GetParametersByPath",
            json!({"Path": "/", "Recursive": true})
        ))
        .is_empty()
    );

    let many = ok(
        &c,
        ALICE,
        "GetParameters",
        json!({"Names": ["/p/a", "/nope", "/p/b:1", "/p/b:2"]}),
    );
    assert_eq!(names(&many), ["/p/a", "/p/b"]);
    assert_eq!(many["InvalidParameters"], json!(["/nope", "/p/b:2"]));

    let d = ok(
        &c,
        ALICE,
        "DescribeParameters",
        json!({"ParameterFilters": [{"Key": "Path", "Option": "Recursive", "Values": ["/p/c"]}]}),
    );
    assert_eq!(names(&d), ["/p/c/d", "/p/c/e/f"]);
    assert_eq!(
        d["Parameters"][0]["LastModifiedUser"],
        format!("arn:aws:iam::{ALICE}:root")
    );
    let d = ok(
        &c,
        ALICE,
        "DescribeParameters",
        json!({"Filters": [{"Key": "Name", "Values": ["/q"]}]}),
    );
    assert_eq!(names(&d), ["/q/x"]);
    let d = ok(&c, ALICE, "DescribeParameters", json!({"MaxResults": 3}));
    assert_eq!(names(&d).len(), 3);
    assert!(d["NextToken"].is_string());

    let t = ok(
        &c,
        ALICE,
        "ListTagsForResource",
        json!({"ResourceType": "Parameter", "ResourceId": "/p/a"}),
    );
    assert_eq!(t["TagList"], json!([{"Key": "n", "Value": "/p/a"}]));
    assert_eq!(
        err(
            &c,
            BOB,
            "ListTagsForResource",
            json!({"ResourceType": "Parameter", "ResourceId": "/p/a"})
        ),
        "InvalidResourceId"
    );

    ok(&c, ALICE, "DeleteParameter", json!({"Name": "/p/a"}));
    assert_eq!(
        err(&c, ALICE, "DeleteParameter", json!({"Name": "/p/a"})),
        "ParameterNotFound"
    );
    assert_eq!(
        err(&c, BOB, "DeleteParameter", json!({"Name": "/p/b"})),
        "ParameterNotFound"
    );
    let del = ok(
        &c,
        ALICE,
        "DeleteParameters",
        json!({"Names": ["/p/b", "/p/a"]}),
    );
    assert_eq!(
        (
            del["DeletedParameters"].clone(),
            del["InvalidParameters"].clone()
        ),
        (json!(["/p/b"]), json!(["/p/a"]))
    );
    let v = ok(
        &c,
        ALICE,
        "PutParameter",
        json!({"Name": "/p/b", "Value": "again", "Type": "String"}),
    );
    assert_eq!(
        v["Version"], 1,
        "a deleted parameter starts again at version 1"
    );
    assert!(
        ok(
            &c,
            ALICE,
            "ListTagsForResource",
            json!({"ResourceType": "Parameter", "ResourceId": "/p/b"})
        )["TagList"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn public_parameters_are_read_only_and_shared() {
    let c = Catalog::in_memory().unwrap();
    let name = "/aws/service/debian/release/12/latest/amd64";
    crate::publish_public_parameter(&c, REGION, name, "ami-0123456789abcdef0", "aws:ec2:image")
        .unwrap();
    for account in [ALICE, BOB] {
        let p = &ok(&c, account, "GetParameter", json!({"Name": name}))["Parameter"];
        assert_eq!(p["Value"], "ami-0123456789abcdef0");
        assert_eq!(
            p["ARN"],
            format!("arn:aws:ssm:{REGION}::parameter/aws/service/debian/release/12/latest/amd64")
        );
        let by_path = ok(
            &c,
            account,
            "GetParametersByPath",
            json!({"Path": "/aws/service/debian", "Recursive": true}),
        );
        assert_eq!(by_path["Parameters"][0]["Name"], name);
        assert_eq!(
            err(
                &c,
                account,
                "PutParameter",
                json!({"Name": name, "Value": "ami-0123456789abcdef1", "Overwrite": true})
            ),
            "AccessDeniedException"
        );
        assert_eq!(
            err(&c, account, "DeleteParameters", json!({"Names": [name]})),
            "AccessDeniedException"
        );
        assert_eq!(
            err(
                &c,
                account,
                "AddTagsToResource",
                json!({"ResourceType": "Parameter", "ResourceId": name, "Tags": [{"Key": "a", "Value": "b"}]})
            ),
            "AccessDeniedException"
        );
    }
    assert!(
        ok(&c, ALICE, "DescribeParameters", json!({}))["Parameters"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn concurrent_overwrites_get_distinct_versions() {
    let c = Catalog::in_memory().unwrap();
    ok(
        &c,
        ALICE,
        "PutParameter",
        json!({"Name": "/race", "Value": "0", "Type": "String"}),
    );
    let versions = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4 {
            let (c, versions) = (&c, &versions);
            s.spawn(move || {
                for i in 0..10 {
                    let v = ok(
                        c,
                        ALICE,
                        "PutParameter",
                        json!({"Name": "/race", "Value": format!("{t}-{i}"), "Overwrite": true}),
                    );
                    versions
                        .lock()
                        .unwrap()
                        .push(v["Version"].as_i64().unwrap());
                }
            });
        }
    });
    let mut versions = versions.into_inner().unwrap();
    versions.sort_unstable();
    assert_eq!(versions, (2..=41).collect::<Vec<i64>>());
    let h = ok(&c, ALICE, "GetParameterHistory", json!({"Name": "/race"}));
    assert_eq!(h["Parameters"].as_array().unwrap().len(), 41);
}
