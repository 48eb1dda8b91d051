//! A minimal HTTP/1 client (no TLS) for vai; the apiserver is asked through kube's client.
//! One connection per request, so every request is timed from its connect, as a new client's.

use http_body_util::BodyExt;

/// Plain-HTTP GETs, a connection each.
pub struct Client;

impl Client {
    /// GET a plain-HTTP URL; (status, body).
    pub async fn get(&self, url: &str) -> Result<(u16, bytes::Bytes), String> {
        self.get_as(url, None).await
    }

    /// GET a plain-HTTP URL with a bearer token, if given; (status, body).
    pub async fn get_as(
        &self,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<(u16, bytes::Bytes), String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
        let host = uri.authority().unwrap().to_string();
        let stream = tokio::net::TcpStream::connect(&host)
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut request =
            http::Request::get(uri.path_and_query().unwrap().as_str()).header("host", host);
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = send
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, body.to_bytes()))
    }
}
