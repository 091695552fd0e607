#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
use std::str::FromStr;
fn main() {
    let p = cedar_policy::Policy::from_str(r#"permit (principal, action, resource is File) when { resource.path like "a\*b*c" && ["x","y"].contains(resource.name) && "q" == resource.tool && context.x } unless { resource.z };"#).unwrap();
    println!("{}", serde_json::to_string(&p.to_json().unwrap()).unwrap());
}
