//! The replica spec as a URL: the form the hydrator, the VFS and `litestream restore` take.

use crate::spec::ReplicaSpec;

impl ReplicaSpec {
    /// Names of the backends that are set (valid specs have exactly one).
    pub fn backends(&self) -> Vec<&'static str> {
        [
            ("s3", self.s3.is_some()),
            ("gcs", self.gcs.is_some()),
            ("azure", self.azure.is_some()),
            ("file", self.file.is_some()),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| n)
        .collect()
    }

    /// The replica URL, or `None` unless exactly one backend is set (see [`crate::validate`]).
    pub fn url(&self) -> Option<String> {
        if self.backends().len() != 1 {
            return None;
        }
        if let Some(s) = &self.s3 {
            let mut q = Vec::new();
            if let Some(e) = &s.endpoint {
                q.push(format!("endpoint={e}"));
            }
            if let Some(r) = &s.region {
                q.push(format!("region={r}"));
            }
            if let Some(f) = s.force_path_style {
                q.push(format!("forcePathStyle={f}"));
            }
            let query = if q.is_empty() {
                String::new()
            } else {
                format!("?{}", q.join("&"))
            };
            return Some(format!("s3://{}/{}{query}", s.bucket, s.path));
        }
        let endpoint = |e: &Option<String>| {
            e.as_ref()
                .map(|e| format!("?endpoint={e}"))
                .unwrap_or_default()
        };
        if let Some(g) = &self.gcs {
            return Some(format!(
                "gs://{}/{}{}",
                g.bucket,
                g.path,
                endpoint(&g.endpoint)
            ));
        }
        if let Some(a) = &self.azure {
            return Some(format!(
                "abs://{}@{}/{}{}",
                a.account_name,
                a.container,
                a.path,
                endpoint(&a.endpoint)
            ));
        }
        self.file.as_ref().map(|f| format!("file://{}", f.path))
    }
}

#[cfg(test)]
mod tests {
    use crate::*;

    #[test]
    fn urls_per_backend() {
        let s3 = ReplicaSpec {
            s3: Some(S3Replica {
                bucket: "bkt".into(),
                path: "apps/orders".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
                force_path_style: Some(true),
                credentials_secret_ref: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            s3.url().unwrap(),
            "s3://bkt/apps/orders?endpoint=http://127.0.0.1:9000&region=eu-west-1&forcePathStyle=true"
        );
        let file = ReplicaSpec {
            file: Some(FileReplica {
                path: "/data/r".into(),
            }),
            ..Default::default()
        };
        assert_eq!(file.url().unwrap(), "file:///data/r");
        let both = ReplicaSpec {
            s3: s3.s3.clone(),
            file: file.file.clone(),
            ..Default::default()
        };
        assert_eq!(both.url(), None);
        let gcs = ReplicaSpec {
            gcs: Some(GcsReplica {
                bucket: "bkt".into(),
                path: "orders".into(),
                endpoint: Some("http://fake-gcs:4443".into()),
                credentials_secret_ref: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            gcs.url().unwrap(),
            "gs://bkt/orders?endpoint=http://fake-gcs:4443"
        );
        let azure = ReplicaSpec {
            azure: Some(AzureReplica {
                account_name: "devstoreaccount1".into(),
                container: "dbs".into(),
                path: "orders".into(),
                endpoint: Some("http://azurite:10000/devstoreaccount1".into()),
                credentials_secret_ref: None,
            }),
            ..Default::default()
        };
        let url = azure.url().unwrap();
        assert_eq!(
            url,
            "abs://devstoreaccount1@dbs/orders?endpoint=http://azurite:10000/devstoreaccount1"
        );
        // The URL the VFS and the hydrator parse keeps the endpoint.
        match ltx_url_endpoint(&url) {
            Some(e) => assert_eq!(e, "http://azurite:10000/devstoreaccount1"),
            None => panic!("no endpoint in {url}"),
        }
    }

    fn ltx_url_endpoint(url: &str) -> Option<String> {
        url::Url::parse(url)
            .ok()?
            .query_pairs()
            .find(|(k, _)| k == "endpoint")
            .map(|(_, v)| v.into_owned())
    }
}
