package storeevents.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.serialization.SimpleStringEncoder;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.file.sink.FileSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.core.fs.FileSystem;
import org.apache.flink.core.fs.Path;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.filesystem.OutputFileConfig;
import org.apache.flink.streaming.api.functions.sink.filesystem.bucketassigners.BasePathBucketAssigner;
import org.apache.flink.streaming.api.functions.sink.filesystem.rollingpolicies.OnCheckpointRollingPolicy;

/**
 * Flink's own answer to what the consumers do: read a topic from the beginning up to the
 * offsets it had at the start (a bounded KafkaSource), keep the records whose
 * {@code event_type} is the one asked for, and write them to {@code s3://} as JSON lines
 * with FileSink, whose files become visible only when a checkpoint commits them (exactly
 * once). The job ends, after its final checkpoint, once the backlog is drained.
 *
 * <p>Arguments: bootstrap servers, topic, output URI ({@code s3://bucket/prefix}),
 * checkpoint interval in ms, event type to keep ({@code all} keeps every record). S3
 * endpoint and keys come from S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
 */
public final class KafkaToS3 {
  private KafkaToS3() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 5) {
      System.err.println("usage: KafkaToS3 BOOTSTRAP TOPIC s3://BUCKET/PREFIX CHECKPOINT_MS EVENT_TYPE|all");
      System.exit(2);
    }
    String bootstrap = args[0];
    String topic = args[1];
    String output = args[2];
    long checkpointMs = Long.parseLong(args[3]);
    String keep = args[4];

    Map<String, String> settings = new HashMap<>();
    settings.put("s3.endpoint", System.getenv("S3_ENDPOINT"));
    settings.put("s3.path.style.access", "true");
    settings.put("s3.access-key", System.getenv("AWS_ACCESS_KEY_ID"));
    settings.put("s3.secret-key", System.getenv("AWS_SECRET_ACCESS_KEY"));
    settings.put("fs.s3a.endpoint.region", System.getenv().getOrDefault("AWS_REGION", "us-east-1"));
    settings.put("fs.s3a.connection.ssl.enabled", "false");
    // The keys above only: without this, S3A also probes EC2's instance metadata.
    settings.put("fs.s3a.aws.credentials.provider", "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider");
    Configuration conf = Configuration.fromMap(settings);
    FileSystem.initialize(conf, null);

    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
    env.enableCheckpointing(checkpointMs);

    KafkaSource<String> source =
        KafkaSource.<String>builder()
            .setBootstrapServers(bootstrap)
            .setTopics(topic)
            .setGroupId("flink-bench")
            .setStartingOffsets(OffsetsInitializer.earliest())
            .setBounded(OffsetsInitializer.latest())
            .setValueOnlyDeserializer(new SimpleStringSchema())
            .build();
    DataStream<String> records = env.fromSource(source, WatermarkStrategy.noWatermarks(), "kafka");
    if (!keep.equals("all")) {
      records = records.filter(new KeepType(keep)).name("keep " + keep);
    }
    FileSink<String> sink =
        FileSink.forRowFormat(new Path(output), new SimpleStringEncoder<String>("UTF-8"))
            .withBucketAssigner(new BasePathBucketAssigner<>())
            .withRollingPolicy(OnCheckpointRollingPolicy.build())
            .withOutputFileConfig(OutputFileConfig.builder().withPartSuffix(".jsonl").build())
            .build();
    records.sinkTo(sink).name("s3");
    JobExecutionResult result = env.execute("kafka-to-s3 " + topic);
    // The job's own running time, without the JVM's and the mini cluster's start.
    System.out.println("net_runtime_ms " + result.getNetRuntime());
    // S3A's thread pools keep the JVM alive for about a minute after the job ends.
    System.exit(0);
  }

  /** Keeps a record when it is a JSON object whose event_type is the given one. */
  static final class KeepType implements org.apache.flink.api.common.functions.FilterFunction<String> {
    private final String type;
    private transient ObjectMapper json;

    KeepType(String type) {
      this.type = type;
    }

    @Override
    public boolean filter(String value) {
      if (json == null) {
        json = new ObjectMapper();
      }
      try {
        JsonNode node = json.readTree(value);
        return node != null && node.isObject() && type.equals(node.path("event_type").asText());
      } catch (Exception notJson) {
        return false;
      }
    }
  }
}
