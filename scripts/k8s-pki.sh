# Sourced by scripts/k8s-testenv.sh and scripts/k8s-cluster.sh: a test CA, the API server's
# certificate, an admin client certificate, the service-account key pair, and kubeconfigs.

# k8s_pki DIR CN SAN: writes ca, apiserver (for SAN, an openssl subjectAltName list),
# admin (system:masters) and sa keys into DIR, once.
k8s_pki() {
  local p="$1" cn="$2" san="$3"
  [ -f "$p/admin.crt" ] && return
  mkdir -p "$p"
  (
    cd "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj "/CN=$cn" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile admin.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext
  )
}

# k8s_kubeconfig FILE SERVER PKI_DIR: an admin kubeconfig for SERVER (mode 600).
k8s_kubeconfig() {
  local file="$1" server="$2" p="$3"
  ( umask 077
    cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "$server", certificate-authority-data: "$(base64 -w0 <"$p/ca.crt")"}
users:
- name: admin
  user: {client-certificate-data: "$(base64 -w0 <"$p/admin.crt")", client-key-data: "$(base64 -w0 <"$p/admin.key")"}
contexts:
- name: local
  context: {cluster: local, user: admin, namespace: default}
current-context: local
KC
  )
}
