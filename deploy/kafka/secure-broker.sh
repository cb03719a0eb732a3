#!/bin/bash
# The secure single-node Kafka of deploy/docker-compose.yml's "secure" profile (the apache/kafka image runs it):
# SASL_SSL listeners with SCRAM-SHA-512, TLS from a CA made here on first start (keytool), KRaft's
# StandardAuthorizer with allow.everyone.if.no.acl.found=false, and one super user, admin, whose SCRAM credential
# is written when the storage is formatted. Every other principal: surveil acl apply (README, docs/security.md).
#
# Environment (defaults for the compose file):
#   SURVEIL_KAFKA_ADMIN_PASSWORD  the super user's password (required)
#   KAFKA_LIBS   Kafka's jars (/opt/kafka/libs)     SECURE_DIR  TLS files, generated config (/var/lib/kafka/data/secure)
#   DATA_DIR     the log dir (/var/lib/kafka/data/logs)  HOSTNAME_IN the broker's name for other containers (kafka-secure)
#   INTERNAL_PORT 9094, EXTERNAL_HOST 127.0.0.1, EXTERNAL_PORT 19094, CONTROLLER_PORT 9093
# Clients need $SECURE_DIR/ca.pem (Python: SURVEIL_SSL_CAFILE) or $SECURE_DIR/truststore.p12 (Java, its password
# in $SECURE_DIR/truststore.password): docker compose cp kafka-secure:/var/lib/kafka/data/secure/ca.pem .
set -euo pipefail
: "${SURVEIL_KAFKA_ADMIN_PASSWORD:?set SURVEIL_KAFKA_ADMIN_PASSWORD, the password of the Kafka super user}"
KAFKA_LIBS=${KAFKA_LIBS:-/opt/kafka/libs}
SECURE_DIR=${SECURE_DIR:-/var/lib/kafka/data/secure}
DATA_DIR=${DATA_DIR:-/var/lib/kafka/data/logs}
HOSTNAME_IN=${HOSTNAME_IN:-kafka-secure}
INTERNAL_PORT=${INTERNAL_PORT:-9094}
EXTERNAL_HOST=${EXTERNAL_HOST:-127.0.0.1}
EXTERNAL_PORT=${EXTERNAL_PORT:-19094}
CONTROLLER_PORT=${CONTROLLER_PORT:-9093}
case "$SURVEIL_KAFKA_ADMIN_PASSWORD" in
  *[\"\\,\[\]\ ]*) echo "SURVEIL_KAFKA_ADMIN_PASSWORD may not contain spaces, quotes, backslashes, commas or brackets" >&2
                   exit 2 ;;
esac
mkdir -p "$SECURE_DIR" "$DATA_DIR"
umask 077

# TLS, once: a CA, the broker's key and certificate signed by it (for the in-network and the published name)
if [ ! -f "$SECURE_DIR/broker.p12" ]; then
  head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$SECURE_DIR/keystore.password"
  head -c 12 /dev/urandom | base64 | tr -d '/+=' > "$SECURE_DIR/truststore.password"
  # keytool reads the store passwords from the environment (-storepass:env), never from its command line
  ks=$(cat "$SECURE_DIR/keystore.password"); export ks
  ts=$(cat "$SECURE_DIR/truststore.password"); export ts
  rm -f "$SECURE_DIR"/ca.p12 "$SECURE_DIR"/broker.p12.tmp "$SECURE_DIR"/truststore.p12
  keytool -genkeypair -keystore "$SECURE_DIR/ca.p12" -storetype PKCS12 -storepass:env ks -alias ca \
    -dname "CN=surveil compose CA" -keyalg EC -groupname secp256r1 -validity 825 -ext bc:c=ca:true,pathlen:0 \
    -ext ku:c=keyCertSign,cRLSign
  keytool -exportcert -rfc -keystore "$SECURE_DIR/ca.p12" -storepass:env ks -alias ca -file "$SECURE_DIR/ca.pem"
  keytool -genkeypair -keystore "$SECURE_DIR/broker.p12.tmp" -storetype PKCS12 -storepass:env ks -alias broker \
    -dname "CN=$HOSTNAME_IN" -keyalg EC -groupname secp256r1 -validity 825
  keytool -certreq -keystore "$SECURE_DIR/broker.p12.tmp" -storepass:env ks -alias broker \
    | keytool -gencert -keystore "$SECURE_DIR/ca.p12" -storepass:env ks -alias ca -rfc -validity 825 \
        -ext "san=dns:$HOSTNAME_IN,dns:localhost,ip:$EXTERNAL_HOST,ip:127.0.0.1" -ext eku=serverAuth,clientAuth \
        > "$SECURE_DIR/broker.pem"
  keytool -importcert -noprompt -keystore "$SECURE_DIR/broker.p12.tmp" -storepass:env ks -alias ca \
    -file "$SECURE_DIR/ca.pem"
  keytool -importcert -noprompt -keystore "$SECURE_DIR/broker.p12.tmp" -storepass:env ks -alias broker \
    -file "$SECURE_DIR/broker.pem"
  keytool -importcert -noprompt -keystore "$SECURE_DIR/truststore.p12" -storetype PKCS12 -storepass:env ts \
    -alias surveil-ca -file "$SECURE_DIR/ca.pem"
  mv "$SECURE_DIR/broker.p12.tmp" "$SECURE_DIR/broker.p12"
  chmod 644 "$SECURE_DIR/ca.pem" "$SECURE_DIR/truststore.p12" "$SECURE_DIR/truststore.password"
fi
ks=$(cat "$SECURE_DIR/keystore.password")
pw=$SURVEIL_KAFKA_ADMIN_PASSWORD
scram="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$pw\";"
cat > "$SECURE_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=SASL_SSL://0.0.0.0:$INTERNAL_PORT,EXTERNAL://0.0.0.0:$EXTERNAL_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=SASL_SSL://$HOSTNAME_IN:$INTERNAL_PORT,EXTERNAL://$EXTERNAL_HOST:$EXTERNAL_PORT
# the controller listener (PLAIN, no TLS) is on the container's loopback only: nothing else on the network reaches it
listener.security.protocol.map=SASL_SSL:SASL_SSL,EXTERNAL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=SASL_SSL
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$scram
listener.name.external.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.external.scram-sha-512.sasl.jaas.config=$scram
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$pw" user_admin="$pw";
ssl.keystore.type=PKCS12
ssl.keystore.location=$SECURE_DIR/broker.p12
ssl.keystore.password=$ks
ssl.key.password=$ks
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_DIR/ca.pem
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin
auto.create.topics.enable=false
log.dirs=$DATA_DIR
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
# the admin's client properties (Kafka's tools, surveil acl --command-config)
cat > "$SECURE_DIR/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=$scram
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_DIR/ca.pem
EOF
if [ ! -f "$DATA_DIR/meta.properties" ]; then
  # the admin's SCRAM credential goes through a private Java @argfile, never on the command line
  args="$SECURE_DIR/format.args"
  printf '"%s"\n' kafka.tools.StorageTool format --ignore-formatted \
    -t "$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid)" -c "$SECURE_DIR/server.properties" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$pw]" > "$args"
  java -cp "$KAFKA_LIBS/*" "@$args"
  rm -f "$args"
fi
exec java ${KAFKA_HEAP_OPTS:--Xmx512m} -cp "$KAFKA_LIBS/*" ${KAFKA_LOG4J_OPTS:-} kafka.Kafka "$SECURE_DIR/server.properties"
